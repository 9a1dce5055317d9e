"""Where the files shipped with the product live, whatever the working directory."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ANNOTATIONS_DIR = REPO_ROOT / "annotations"
DEFAULT_CSV = ANNOTATIONS_DIR / "kinetics700_2020_validate.csv"
DEFAULT_SUBSET = ANNOTATIONS_DIR / "selected_subset.json"
CLASSES_FILE = ANNOTATIONS_DIR / "kinetics700_classes.txt"
