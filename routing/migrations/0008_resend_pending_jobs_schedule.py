"""Add the default schedule that sends pending jobs again (schedules_ensure creates only missing rows)."""

from django.db import migrations


def create_missing_schedules(apps, schema_editor):
    from routing.services.schedules import schedules_ensure

    schedules_ensure(
        crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
        periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
        changes_model=apps.get_model("django_celery_beat", "PeriodicTasks"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0007_job_pending_tenant_protect"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_missing_schedules, migrations.RunPython.noop)]
