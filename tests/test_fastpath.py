"""The compiled twins must be the ones in use, not a silent fallback.

`make test` installs the package (which compiles them) before it runs the
suite, so a missing extension is a failure, on every machine, not only in CI.
Only a run that asks for the pure twins (WASMLAMBDA_NO_EXTENSIONS=1, or
WASMLAMBDA_PORTABLE=1) skips.
"""

import pytest

from wasmlambda import _fastpath
from wasmlambda.sandbox import _snapshot


@pytest.mark.skipif(_fastpath.extensions_disabled(), reason="the pure twins were asked for")
def test_compiled_extensions_are_loaded() -> None:
    assert not _fastpath.extensions_disabled()
    assert _fastpath.is_built("_delta")
    assert _snapshot._delta.__name__ == "wasmlambda._fastpath._delta"
    assert _snapshot._delta.__file__.endswith(".so")
    from wasmlambda.http import _parser
    from wasmlambda.kernel import _meter, _scheduler
    from wasmlambda.sandbox import _call

    for module, name in ((_call, "_call"), (_parser, "_parser"), (_meter, "_meter"), (_scheduler, "_handoff")):
        assert _fastpath.is_built(name)
        assert module._implementation.__name__ == f"wasmlambda._fastpath.{name}"


def test_disabling_extensions_picks_the_pure_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from wasmlambda.sandbox import _delta_py

    monkeypatch.setenv("WASMLAMBDA_NO_EXTENSIONS", "1")
    assert _fastpath.pick("_delta", _delta_py) is _delta_py
