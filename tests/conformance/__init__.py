"""The API held to its OpenAPI document by schemathesis: the suite's bounded run
(tests/integration/test_api_fuzz.py) and the full one (``python -m tests.conformance``,
``make conformance``), which shares this package's rules of what a refusal may be.
"""
