"""analyze: results table, summary with intervals, agreement / failure / confidence analyses, one HTML report."""

import argparse
from pathlib import Path

from mtkd.analysis import OUTPUTS, headline_sentence, run_analysis
from mtkd.cli import stage
from mtkd.pipeline import load_stage_params


@stage
def main(argv=None):
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_stage_params()
    results = run_analysis(params, Path("."))
    for task, summary in results["summary"].items():
        print(headline_sentence(task, summary))
    print("wrote " + ", ".join(OUTPUTS))


if __name__ == "__main__":
    main()
