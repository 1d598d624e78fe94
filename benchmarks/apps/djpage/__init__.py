"""The Django app of benchmarks/apps/django_page_app.py: two models and one template."""
