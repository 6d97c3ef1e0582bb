"""OpenAI-compatible endpoints over the served graphs (``/v1/models``,
``/v1/chat/completions``, streaming as server-sent events), mounted by
``compose.serve.http_app.create_app``.

Usage::

    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused-on-loopback")
    reply = client.chat.completions.create(
        model="naive_rag", messages=[{"role": "user", "content": "Who designed the bridge?"}])
    reply.choices[0].message.content, reply.composerag["output"]["citations"]
"""

from compose.serve.openai_api.errors import install_error_shape, is_openai_path
from compose.serve.openai_api.routes import openai_router

__all__ = ["install_error_shape", "is_openai_path", "openai_router"]
