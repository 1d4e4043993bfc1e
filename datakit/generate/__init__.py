"""Generation for synthetic data: one request list in, one result per request out, journaled and resumable.

    spec = parse_spec("openai:default_model@http://127.0.0.1:8080/v1")
    results = generate_all(spec, [Request(messages=[{"role": "user", "content": "Hi"}])], journal=Journal("gen.jsonl"))
"""

from datakit.generate.client import Request, Result, generate_all
from datakit.generate.journal import Journal
from datakit.generate.spec import GeneratorSpec, parse_spec

__all__ = ["GeneratorSpec", "Journal", "Request", "Result", "generate_all", "parse_spec"]
