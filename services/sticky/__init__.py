"""Lesson sticky: sticky packets (粘包) and why a byte stream needs framing."""
