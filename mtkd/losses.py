"""The distillation loss (SPEC §6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

NO_LABEL = -1  # the label of an example without a gold label (a transfer-set example)


def kd_loss(student_logits: torch.Tensor, target_probs: torch.Tensor | None, labels: torch.Tensor,
            T: float, alpha: float) -> torch.Tensor:
    """``α · T² · KL(p_T ‖ q_T) + (1 − α) · CE(s, y)``, KL summed over classes, averaged over the batch.

    ``target_probs`` is the fused teacher distribution already at temperature T; the T²
    factor keeps the soft term's gradient scale independent of T (Hinton et al. 2015).

    A label of :data:`NO_LABEL` (a transfer example, issue #17) has the soft term only: CE is the
    mean over the batch's labelled examples (0 when it has none).
    """
    if bool((labels == NO_LABEL).any()):
        labelled = labels != NO_LABEL
        ce = (F.cross_entropy(student_logits.float()[labelled], labels[labelled], reduction="sum")
              / labelled.sum().clamp_min(1))
    else:  # the plain mean (bit for bit as before transfer sets existed)
        ce = F.cross_entropy(student_logits.float(), labels)
    if alpha == 0.0 or target_probs is None:
        return ce
    log_q = F.log_softmax(student_logits.float() / T, dim=-1)
    kl = F.kl_div(log_q, target_probs.float(), reduction="batchmean")  # KL(p ‖ q): teacher first
    return alpha * T * T * kl + (1.0 - alpha) * ce
