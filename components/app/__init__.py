"""App layer: the server, REST and OpenAI-compatible APIs, listening pages, access control and the Gradio UI.

The top of the lab: it may import every layer below; nothing imports it but ``lab.py``."""
