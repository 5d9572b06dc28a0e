"""The label used (COALESCE(review_label, label)) indexed, with the id: the admin's "label used" filter
newest first, and PostgreSQL's statistics of the expression (its estimated count). Built CONCURRENTLY on
PostgreSQL, as 0007's."""
import django.db.models.functions.comparison
from django.conf import settings
from django.db import migrations, models

from recognizer.migrations import _operations


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('recognizer', '0007_review_at_scale'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        _operations.AddIndexConcurrentlyOnPostgres(
            model_name='drawing',
            index=models.Index(django.db.models.functions.comparison.Coalesce('review_label', 'label'), models.F('id'),
                               name='drawing_effective'),
        ),
    ]
