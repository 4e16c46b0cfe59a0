"""SocketLab orchestration: the lesson model (topology), the engine backend and the CLI on top.

Layering (containerlab/Kathará style): ``cli`` parses arguments and prints; ``lab`` (the manager)
does the work through a Docker client it is given; ``topology`` knows lessons and services from
``compose.yaml`` and nothing about Docker; ``scenarios`` know what each lesson must show and talk
to machines only through ``scenario.Node``.
"""
__version__ = "0.1.0"
