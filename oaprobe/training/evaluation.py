"""Model outputs on a split: probabilities and embeddings, validation scores, the predictions table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from torch import nn

from oaprobe.device import autocast, eval_mode
from oaprobe.facts import KL_GRADES, N_KL
from oaprobe.training.batches import Volumes
from oaprobe.training.runs import PREDICTION_COLUMNS


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor | Volumes, batch_size: int,
            device: str | torch.device = "cpu") -> dict[str, np.ndarray | None]:
    """Run ``model`` (a HierarchicalProbe) in eval mode over ``images`` in order.

    Returns numpy arrays: ``embedding`` (N, D) float32, ``oa_logits`` / ``kl_logits`` (absent head:
    None), ``p_oa`` (N,) and ``p_kl`` (N, 5) or None, via ``model.predict_proba``.
    """
    device = torch.device(device)
    volumes = images if isinstance(images, Volumes) else Volumes(images, device, channels_last=False)
    outs: dict[str, list[torch.Tensor]] = {"oa": [], "kl": [], "embedding": []}
    n = len(volumes)
    with eval_mode(model):
        for start in range(0, n, batch_size):
            with autocast(volumes.device):
                out = model(volumes.batch(torch.arange(start, min(start + batch_size, n))))
            for key in outs:
                if out.get(key) is not None:
                    outs[key].append(out[key].float().cpu())
    if not outs["embedding"]:  # no knees
        dim = getattr(model.encoder, "out_dim", 0)
        return {"embedding": np.zeros((0, dim), np.float32), "oa_logits": None, "kl_logits": None,
                "p_oa": np.zeros(0), "p_kl": None}
    cat = {k: (torch.cat(v) if v else None) for k, v in outs.items()}
    p_oa, p_kl = model.predict_proba(cat)
    return {
        "embedding": cat["embedding"].numpy().astype(np.float32),
        "oa_logits": None if cat["oa"] is None else cat["oa"].numpy(),
        "kl_logits": None if cat["kl"] is None else cat["kl"].numpy(),
        "p_oa": p_oa.detach().float().cpu().numpy().astype(np.float64),
        "p_kl": None if p_kl is None else p_kl.detach().float().cpu().numpy().astype(np.float64),
    }


def loss_value(value: Any) -> float:
    """A loss (tensor, number or None) as a Python float; None is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().cpu())
    return float(value)


def evaluate(model: nn.Module, pred: dict[str, np.ndarray], kl: np.ndarray, oa: np.ndarray, oa_weight: float) -> dict[str, float]:
    """Validation metrics from :func:`predict` output: loss (unweighted by class, unsmoothed), OA AUC, KL QWK.

    Metrics that cannot be computed (head absent, one class only, no knees) are NaN.
    """
    result = {"val_loss": math.nan, "val_oa_auc": math.nan, "val_kl_qwk": math.nan}
    if len(oa) == 0:
        return result
    out = {
        "oa": None if pred["oa_logits"] is None else torch.from_numpy(pred["oa_logits"]),
        "kl": None if pred["kl_logits"] is None else torch.from_numpy(pred["kl_logits"]),
        "embedding": torch.from_numpy(pred["embedding"]),
    }
    with torch.no_grad():
        kl_t, oa_t = torch.tensor(np.asarray(kl, dtype=np.int64)), torch.tensor(np.asarray(oa, dtype=np.int64))
        loss, _ = model.loss(out, kl_t, oa_t, oa_weight=oa_weight, label_smoothing=0.0)  # selection sees the plain loss
    result["val_loss"] = loss_value(loss)
    if len(np.unique(oa)) == 2:
        result["val_oa_auc"] = float(roc_auc_score(oa, pred["p_oa"]))
    if pred["p_kl"] is not None:
        result["val_kl_qwk"] = float(
            cohen_kappa_score(kl, pred["p_kl"].argmax(1), weights="quadratic", labels=list(KL_GRADES))
        )
    return result


def prediction_table(rows: pd.DataFrame, pred: dict[str, np.ndarray]) -> pd.DataFrame:
    """``predictions.csv`` rows of one split: ids, labels (kl_clean when known), probabilities, predictions."""
    n = len(rows)
    table = pd.DataFrame({
        "case_id": rows["case_id"].astype(str).to_numpy(),
        "subject_id": rows["subject_id"].astype(str).to_numpy(),
        "split": rows["split"].astype(str).to_numpy(),
        "kl": rows["kl"].astype(int).to_numpy(),
        "oa": rows["oa"].astype(int).to_numpy(),
    })
    clean = rows["kl_clean"].to_numpy() if "kl_clean" in rows else [pd.NA] * n
    table["kl_clean"] = pd.array(clean, dtype="Int64")
    table["p_oa"] = pred["p_oa"]
    p_kl = pred["p_kl"]
    for k in range(N_KL):
        table[f"p_kl{k}"] = p_kl[:, k] if p_kl is not None else np.full(n, np.nan)
    table["pred_oa"] = (pred["p_oa"] >= 0.5).astype(int)
    table["pred_kl"] = pd.array(p_kl.argmax(1) if p_kl is not None else [pd.NA] * n, dtype="Int64")
    return table[list(PREDICTION_COLUMNS)]
