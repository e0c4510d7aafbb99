"""Create the default periodic jobs (weekly re-profiling, nightly refit); edits in the admin are kept."""

from django.db import migrations


def create_default_schedules(apps, schema_editor):
    from routing.services.schedules import schedules_ensure

    schedules_ensure(
        crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
        periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
        changes_model=apps.get_model("django_celery_beat", "PeriodicTasks"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_job_state_updated_at_active_unique"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_default_schedules, migrations.RunPython.noop)]
