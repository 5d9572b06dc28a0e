"""Indexes for the review side at a million drawings and more (docs/scale.md).

Built with CREATE INDEX CONCURRENTLY on PostgreSQL (the table stays writable while each is built: the
workers go on filling predictions in, people go on submitting), hence a migration outside a
transaction; on other databases (SQLite in development) a plain CREATE INDEX."""
import django.db.models.functions.comparison
from django.conf import settings
from django.db import migrations, models

from recognizer.migrations._operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('recognizer', '0006_operations_permission'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='drawing',
            index=models.Index(fields=['model_name', 'id'], name='drawing_model_id'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='drawing',
            index=models.Index(fields=['confidence'], name='drawing_confidence'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='drawing',
            index=models.Index(condition=models.Q(('excluded', True)), fields=['id'], name='drawing_excluded'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='drawing',
            index=models.Index(
                django.db.models.functions.comparison.Coalesce(
                    'confidence', models.Value(-1.0), output_field=models.FloatField()),
                models.F('id'),
                condition=models.Q(('excluded', False), ('reviewed_at__isnull', True)), name='drawing_triage'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='drawing',
            index=models.Index(
                condition=models.Q(('excluded', False), ('predicted_digit__isnull', False),
                                   models.Q(('label__isnull', False), ('review_label__isnull', False), _connector='OR')),
                fields=['model_name', 'predicted_digit', 'label', 'review_label', 'created_at'], name='drawing_scored'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='drawing',
            index=models.Index(
                condition=models.Q(('excluded', False), ('predicted_digit__isnull', False),
                                   models.Q(('label__isnull', False), ('review_label__isnull', False), _connector='OR'),
                                   ('reviewed_at__isnull', False)),
                fields=['model_name', 'predicted_digit', 'label', 'review_label', 'created_at'],
                name='drawing_scored_reviewed'),
        ),
    ]
