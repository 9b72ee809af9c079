import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

FUZZ = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def test_no_generated_request_makes_a_server_error(served_app):
    app, _ = served_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=operation.as_strategy())
        def fuzz(case):
            case.call_and_validate(checks=[not_a_server_error])

        fuzz()
        checked.append(operation.label)
    expected = {"POST /search", "POST /classify", "GET /items/{item_id}", "GET /media/{item_id}"}
    assert expected <= set(checked)
