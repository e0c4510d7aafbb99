"""Add the default schedule that applies new evidence every 30 seconds (schedules_ensure creates only missing rows)."""

from django.db import migrations

from routing.services.schedules import schedules_ensure_in_migration


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0018_evidence_trusted_tenants"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedules_ensure_in_migration, migrations.RunPython.noop)]
