"""Chapter parameters: each bad value is one line naming the parameter, the value and what is expected,
from the CLI (exit 2) and from papermill run directly (an unknown name too)."""

from __future__ import annotations

import re

import nbformat
import papermill
import pytest

from oaprobe.parameters import ParameterError, check_notebook_parameters, check_parameters, check_value

KNOWN = ["preset", "runs_root", "cohorts_root", "backbone", "modes", "seeds", "manifest", "run", "bootstrap_B"]


@pytest.mark.parametrize("name, value, expected", [
    ("seeds", "abc", "parameter seeds = 'abc'; expected null .* or a JSON list"),
    ("seeds", 1, "parameter seeds = 1; expected null"),
    ("seeds", [0, 0], "parameter seeds = \\[0, 0\\]; expected .*distinct"),
    ("seeds", [-1, 2], "parameter seeds = \\[-1, 2\\]"),
    ("bootstrap_B", -5, "parameter bootstrap_B = -5; expected an integer >= 100"),
    ("bootstrap_B", 500.5, "parameter bootstrap_B = 500.5"),
    ("bootstrap_B", True, "parameter bootstrap_B = True"),
    ("modes", ["dual"], "parameter modes = \\['dual'\\]; expected all of single_oa, single_kl, dual in any order"),
    ("modes", ["single_kl", "dual"], "parameter modes = .*use oaprobe compare"),
    ("modes", ["dual", "stacked"], "parameter modes"),
    ("modes", "dual", "parameter modes = 'dual'"),
    ("preset", "defualt", "parameter preset = 'defualt'; expected one of smoke"),
    ("backbone", "resnet", "parameter backbone = 'resnet'; expected a backbone name"),
    ("run", "ema", "parameter run = 'ema'; expected a JSON object"),
    ("run", {"emadecay": 0.9}, "parameter run has key 'emadecay'; expected RunConfig fields"),
    ("run", {"seed": 3}, "parameter run has key 'seed'"),
    ("run", {"ema_decay": 1.5}, "parameter run = .*ema_decay = 1.5; expected 0 \\(off\\) or a decay"),
])
def test_a_bad_value_names_the_parameter_the_value_and_what_is_expected(name, value, expected):
    with pytest.raises(ParameterError, match=f"^chapter backbone: {expected}") as err:
        check_parameters("backbone", {name: value}, KNOWN)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, value", [
    ("seeds", None), ("seeds", [3, 1]), ("modes", ["dual", "single_kl", "single_oa"]),
    ("bootstrap_B", 100), ("run", {"ema_decay": 0.99, "oa_weight": 2.0}), ("manifest", ""), ("preset", "course"),
])
def test_documented_values_are_accepted(name, value):
    assert check_value("backbone", name, value) == value


def test_an_unknown_name_lists_the_chapters_own():
    with pytest.raises(ParameterError, match="chapter backbone: no parameter 'seed'; expected one of preset, runs_root"):
        check_parameters("backbone", {"seed": [0, 1]}, KNOWN)


def test_the_notebook_check_reads_what_papermill_injected():
    params = 'preset = "default"\nseeds = None'
    ns = {"In": ["", params, '# Parameters\npreset = "smoke"\nseed = [0, 1]\n'], "preset": "smoke", "seeds": None,
          "seed": [0, 1]}
    with pytest.raises(ParameterError, match="no parameter 'seed'; expected one of preset, seeds"):
        check_notebook_parameters("backbone", ns)
    ns["In"][2] = '# Parameters\nseeds = "abc"\n'
    ns["seeds"] = "abc"
    with pytest.raises(ParameterError, match="parameter seeds = 'abc'"):
        check_notebook_parameters("backbone", ns)
    check_notebook_parameters("backbone", {"In": ["", params], "preset": "default", "seeds": None})  # no injection


def test_papermill_run_directly_refuses_an_unknown_parameter(tmp_path):
    """The real kernel: IPython's input history holds the parameters and papermill's injected cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('preset = "default"\nbootstrap_B = 10000', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from oaprobe.parameters import check_notebook_parameters\n"
                                          "check_notebook_parameters('results', globals())\nprint('ran')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "nb.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(papermill.PapermillExecutionError, match="no parameter 'bootstrap_b'; expected one of preset, "
                                                                "bootstrap_B"):
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), parameters={"bootstrap_b": 500},
                                   progress_bar=False, cwd=str(tmp_path))
    papermill.execute_notebook(str(source), str(tmp_path / "ok.ipynb"), parameters={"bootstrap_B": 500},
                               progress_bar=False, cwd=str(tmp_path))


@pytest.mark.parametrize("value, expected", [("abc", "seeds = 'abc'"), ("1", "seeds = 1"), ("[0]", "seeds = \\[0\\]")])
def test_chapter_command_refuses_a_bad_value_in_one_line_exit_2(value, expected, capsys):
    from oaprobe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["chapter", "backbone", "-p", "seeds", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert re.search(f"oaprobe chapter: error: chapter backbone: parameter {expected}; expected", err)
