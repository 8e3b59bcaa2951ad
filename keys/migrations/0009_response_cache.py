import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0008_virtual_key_name_unique_per_team"),
    ]

    operations = [
        migrations.AddField(
            model_name="customer",
            name="cache_shared_across_teams",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="customer",
            name="cache_ttl_seconds",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[django.core.validators.MaxValueValidator(2592000)],
            ),
        ),
        migrations.AddField(
            model_name="team",
            name="cache_ttl_seconds",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[django.core.validators.MaxValueValidator(2592000)],
            ),
        ),
        migrations.AddField(
            model_name="virtualkey",
            name="cache_ttl_seconds",
            field=models.PositiveIntegerField(
                blank=True,
                null=True,
                validators=[django.core.validators.MaxValueValidator(2592000)],
            ),
        ),
    ]
