import pytest


@pytest.mark.django_db(transaction=True)
def test_smoke(gateway_llms, upstream, openai_client):
    completion = openai_client.chat.completions.create(
        model="routerhub-auto", messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    print(completion)
    stream = openai_client.chat.completions.create(
        model="routerhub-auto", messages=[{"role": "user", "content": "What is 2+2?"}], stream=True
    )
    for chunk in stream:
        print(chunk)
