"""The value types of a spec: each a lenient parser on top of what JSON Schema can state.

A type is ``Annotated[<python type>, Field(<constraints>), BeforeValidator(<parser>)]``,
most of them made by one of the parsers' part makers (``whole_number``, ``grammar_checked``,
``matching`` ...), which write each bound and pattern once for both.
The parser runs first: it gives the grammar's precise code (``specs.grammar``) and takes
what YAML writes (a port in quotes, a number as an env value). The ``Field`` constraints
(``pattern`` from ``grammar``, ``max_length``, ``ge`` ...) then hold for every parsed value,
and they are what the API's strict bodies and the OpenAPI document keep when they drop the
parsers (``api.spec_shapes``). They must never be stricter than the parser, or the API
would refuse with a generic code what the parser accepts; the unit tests hold them to it.

``parsers`` makes the types (and holds ``InApi`` and ``Derived``, which mark fields of
``ServiceSpec`` for those derived shapes); ``service`` has the service's own fields' types,
``settings`` those of PocketBase's settings and the webhooks. Import from those modules.
"""
