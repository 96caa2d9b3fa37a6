"""What the book's chapters call: studies over run folders, their tables, and generated sentences."""

from oaprobe.report.cohort import CohortView, example_slices, load_cohort
from oaprobe.report.exercises import Exercises
from oaprobe.report.methods import methods_tables
from oaprobe.report.noise import NoiseStudy
from oaprobe.report.sentences import describe_paired, describe_seed_level, tally
from oaprobe.report.study import Study

__all__ = [
    "CohortView", "Exercises", "NoiseStudy", "Study", "describe_paired",
    "describe_seed_level", "example_slices", "load_cohort", "methods_tables", "tally",
]
