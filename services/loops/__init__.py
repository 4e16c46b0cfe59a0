"""Lesson loops: the connection loop, the communication loop, and "Address already in use"."""
