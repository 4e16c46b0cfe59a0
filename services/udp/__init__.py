"""Lesson udp: datagrams, boundaries, truncation, loss, and a client that retries."""
