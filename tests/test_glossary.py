"""The glossary covers the book: every technical term a page uses is defined in book/glossary.md.

Two lists find the terms: :data:`TERMS` (declared: the statistics, models and saliency words the
chapters use) and every upper-case abbreviation in a built page's visible text (a new "XYZ" on a
page fails until the glossary defines it or :data:`NOT_TECHNICAL` names it as a computing word).
The declared list is checked always; the scan of the built pages runs with the book checks
(``-m browser``, after ``oaprobe book --preset smoke --site _build/smoke-site``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_book_consistency import _pages, visible_text

GLOSSARY = Path(__file__).resolve().parent.parent / "book" / "glossary.md"
#: term -> the pattern that finds it in a page's visible text (case-sensitive where case matters)
TERMS: dict[str, str] = {
    "PCA": r"\bPCA\b", "PC1": r"\bPC1\b", "Spearman": r"Spearman", "Kendall": r"Kendall|centroid order τ",
    "LDA": r"\bLDA\b", "UMAP": r"\bUMAP\b", "CORN": r"\bCORN\b|ordinal head", "Dice": r"\bDice\b",
    "enrichment": r"enrichment", "pointing game": r"pointing game", "McNemar": r"McNemar", "DeLong": r"DeLong",
    "Bonferroni": r"Bonferroni", "linear probe": r"linear probe", "oracle": r"\boracle\b",
    "noise ceiling": r"noise ceiling", "integrated gradients": r"integrated gradients", "δ": r"δ",
    "equivalence": r"\bequivalen", "TOST": r"\bTOST\b", "FDR": r"\bFDR\b", "paired bootstrap": r"paired bootstrap",
    "QWK": r"\bQWK\b", "ROC-AUC": r"\bAUC\b", "MAE": r"\bMAE\b", "macro-F1": r"macro-F1", "kappa": r"kappa|κ",
    "CI": r"\bCI\b", "p-value": r"\bp = |p-value", "q-value": r"\bq = |q-value", "paired t-test": r"t-test|t-interval",
    "sign test": r"sign test", "power": r"\bpower\b", "label smoothing": r"smoothing", "λ": r"λ|lambda",
    "Grad-CAM": r"Grad-CAM", "SmoothGrad": r"SmoothGrad", "occlusion": r"occlusion",
    "randomisation check": r"randomisation check", "deletion check": r"deletion", "convergence flag": r"flagged",
    "degenerate run": r"degenerate", "backbone": r"backbone", "embedding": r"embedding", "latent space": r"latent",
    "head": r"\bheads?\b", "stacked vs parallel": r"stacked", "epoch": r"\bepochs?\b", "warm-up": r"warm-up",
    "validation loss": r"validation loss", "recipe": r"recipe", "label-noise strength": r"noise strength|noise unit",
    "host perturbation": r"host perturbation", "seed": r"\bseeds?\b", "decision rule": r"decision rule",
    "clean vs observed grade": r"clean grade", "mode": r"single-KL|single-OA", "ROI": r"\bROI\b",
    "hierarchical supervision": r"hierarchical|coarse", "centroid": r"centroid",
}
#: upper-case words on the pages that name files, tools or computing things, not study terms
NOT_TECHNICAL = frozenset({
    "CSV", "HTML", "GPU", "CPU", "CUDA", "README", "JSON", "CLI", "DONE", "PRESET", "DIR", "VALUE", "FIELD", "NAME",
    "KEY", "SIGTERM", "DOM", "DELTAS", "SIGMA", "MONAI", "CM", "OAIZIB", "ZIB", "PDF", "URL", "API", "RAM", "UTC",
    "CITATION", "LICENSE", "LICENCE", "MIT", "CC", "BY", "SA", "DOI", "CFF", "N", "S", "PATH", "ID", "OK", "UK", "USA",
})


def glossary_terms() -> str:
    """The glossary's defined names (its bold entry lines), lower-cased, one per line."""
    return "\n".join(m.lower() for m in re.findall(r"^\*\*(.+?)\*\*\s*$", GLOSSARY.read_text(encoding="utf-8"), re.M))


def defines(term: str, names: str) -> bool:
    """Whether the glossary's ``names`` define ``term`` (as a word of an entry's name)."""
    return re.search(r"(?<![\w-])" + re.escape(term.lower()) + r"(?![\w-])", names) is not None


def abbreviations(text: str) -> set[str]:
    """Upper-case abbreviations of ``text`` (KL4 is KL; a plural CIs is CI)."""
    found = set()
    for word in re.findall(r"(?<![\w-])[A-Z][A-Z0-9]+s?(?![\w-])", text):  # Grad-CAM is a name, not CAM
        found.add(re.sub(r"^KL\d$", "KL", re.sub(r"s$", "", word)))
    return found


def test_every_declared_term_is_defined():
    names = glossary_terms()
    missing = [t for t in TERMS if not defines(t, names)]
    assert not missing, f"terms the book uses that book/glossary.md does not define: {missing}"


def test_defines_and_abbreviations_on_planted_text():
    names = "pca, pc1 (principal component analysis)\nci (confidence interval)"
    assert defines("PCA", names) and defines("PC1", names) and not defines("LDA", names) and not defines("C", names)
    assert abbreviations("KL4 and KL0, two CIs, PC1, F1, AUC, Grad-CAM and a Dice") == {"KL", "CI", "PC1", "F1", "AUC"}


@pytest.mark.browser
def test_every_term_on_the_built_pages_is_defined():
    names = glossary_terms()
    missing: dict[str, list[str]] = {}
    for page in _pages():
        if page.name == "glossary.html":
            continue
        text = visible_text(page, code=False)
        used = {t for t, pattern in TERMS.items() if re.search(pattern, text)}
        used |= abbreviations(text) - NOT_TECHNICAL
        for term in sorted(t for t in used if not defines(t, names)):
            missing.setdefault(term, []).append(page.name)
    assert not missing, f"used on the pages, not defined in book/glossary.md: {missing}"
