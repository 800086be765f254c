"""Athena SQL templates, shipped in the wheel as package data (this file only makes that possible)."""
