"""Whatever bytes a config file holds, loading ends in a config or in listed problems."""

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.config import InvalidConfig, parse_config
from edgetwin.sources import source_configs
from tests.config.test_loader import MINIMAL

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True), st.text(max_size=20))
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=30,
)


def outcome(text: str) -> None:
    problems = ()
    try:
        parse_config(text, "fuzz.yaml", source_configs())
    except InvalidConfig as err:
        problems = err.problems
        assert problems, "InvalidConfig without problems"
    for problem in problems:
        assert problem.line >= 1
        assert problem.column >= 1
        assert str(problem).startswith("fuzz.yaml:")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_gives_a_config_or_problems(text: str) -> None:
    """Property: arbitrary text never raises anything but InvalidConfig."""
    outcome(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_any_yaml_document_gives_a_config_or_problems(doc: object) -> None:
    """Property: any YAML structure, however wrong its shape, is reported, never crashes."""
    outcome(yaml.safe_dump(doc))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_config_gives_a_config_or_problems(data: st.DataObject) -> None:
    """Property: a valid file with one value replaced by garbage is reported, never crashes."""
    doc = yaml.safe_load(MINIMAL)
    paths = [("gateway", "id"), ("sources", 0, "host"), ("sources", 0, "points", 0, "address"),
             ("sources", 0, "points", 0, "type"), ("sync", "mqtt"), ("sources", 0, "points")]
    path = data.draw(st.sampled_from(paths))
    here = doc
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = data.draw(DOCS)
    outcome(yaml.safe_dump(doc))
