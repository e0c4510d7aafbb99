"""Shadow evaluation: the worker chooses the comparison LLM, judge and budget (empty until then); when a
task was last sent (empty: not yet) and which delivery holds it; the default schedule of the sweep that
sends the tasks."""

import django.db.models.deletion
from django.db import migrations, models

from routing.services.schedules import schedules_ensure_in_migration


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0005_shared_embedding_cache'),
        ('routing', '0021_shadow_evaluation'),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name='shadowevaluation',
            name='claimed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='shadowevaluation',
            name='sent_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='shadowevaluation',
            name='budget',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='evaluations', to='routing.shadowbudget'),
        ),
        migrations.AlterField(
            model_name='shadowevaluation',
            name='comparison_llm',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='registry.llm'),
        ),
        migrations.AddIndex(
            model_name='shadowevaluation',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'compared'])), fields=['sent_at'], name='routing_shadow_running_sent'),
        ),
        migrations.RunPython(schedules_ensure_in_migration, migrations.RunPython.noop),
    ]
