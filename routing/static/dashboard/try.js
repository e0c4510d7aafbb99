// "Try it": moving the λ slider asks the server for the ranking at that λ and redraws the table.
// Without JavaScript the form still works (the "Route" button posts it and the page is rendered).
(function () {
  "use strict";
  var script = document.currentScript;
  var endpoint = script && script.dataset.endpoint;
  var form = document.getElementById("try-form");
  var slider = document.getElementById("lambda-slider");
  var number = document.getElementById("lambda");
  var label = document.getElementById("lambda-value");
  if (!endpoint || !form || !slider || !number) return;

  var low = parseFloat(slider.dataset.low) || 0.01;
  var high = parseFloat(slider.dataset.high) || 100;
  // Position 0 is λ = 0 (quality alone); 1..100 are logarithmic from `low` to `high`.
  function lambdaAt(position) {
    return position <= 0 ? 0 : low * Math.pow(high / low, (position - 1) / 99);
  }
  function positionOf(lambda) {
    if (!(lambda > 0)) return 0;
    var p = 1 + 99 * Math.log(lambda / low) / Math.log(high / low);
    return Math.max(1, Math.min(100, Math.round(p)));
  }
  slider.value = positionOf(parseFloat(number.value));

  function cell(text, numeric) {
    var td = document.createElement("td");
    td.textContent = text;
    if (numeric) td.className = "num";
    return td;
  }

  function draw(result) {
    var chosen = document.getElementById("chosen");
    var table = document.getElementById("ranking");
    if (!chosen || !table) { form.submit(); return; }
    chosen.textContent = result.chosen;
    var body = table.tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    result.ranking.forEach(function (r, i) {
      var row = document.createElement("tr");
      row.className = i === 0 ? "chosen" : (r.allowed ? "" : "excluded");
      row.appendChild(cell(r.allowed ? String(i + 1) : "not allowed"));
      row.appendChild(cell(r.name));
      row.appendChild(cell(r.predicted_quality_text, true));
      row.appendChild(cell(r.estimated_cost_text, true));
      row.appendChild(cell(r.objective_text, true));
      body.appendChild(row);
    });
    label.textContent = "λ = " + result.lambda_text + (result.lambda === 0 ? ": quality alone" : ": quality traded against price");
  }

  var pending = null;
  var sent = 0;
  function rank(lambda) {
    var ticket = ++sent;
    var tenant = document.getElementById("tenant");
    fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value
      },
      body: JSON.stringify({
        prompt: document.getElementById("prompt").value,
        lambda: lambda,
        tenant: tenant ? tenant.value : ""
      })
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (ticket !== sent) return; // a newer request is on its way
      if (answer.ok) { draw(answer.body); form.dataset.ranked = String(lambda); }
      else { label.textContent = answer.body.error ? answer.body.error.message : "Could not rank."; }
    }).catch(function () {
      label.textContent = "The server could not be reached.";
    });
  }

  slider.addEventListener("input", function () {
    var lambda = lambdaAt(parseInt(slider.value, 10));
    number.value = lambda === 0 ? "0" : lambda.toPrecision(4);
    clearTimeout(pending);
    pending = setTimeout(function () { rank(lambda); }, 120);
  });
})();
