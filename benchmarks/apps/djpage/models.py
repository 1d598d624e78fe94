"""Authors and their books: what the benchmark page lists."""

from __future__ import annotations

from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)
    country = models.CharField(max_length=60)

    class Meta:
        app_label = "djpage"


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    published = models.DateField()
    pages = models.PositiveIntegerField()

    class Meta:
        app_label = "djpage"
        indexes = [models.Index(fields=["published"])]
