"""Temperature scaling: the softmax temperature fitted on the validation split after training
(stored in the model's ``temperature`` buffer, so the saved weights carry it), and the expected
calibration error before and after."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from digits.evaluation.metrics import expected_calibration_error
from digits.inference.network import DigitNet


@torch.no_grad()
def logits_of(model: DigitNet, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` (eval mode) at temperature 1."""
    model.eval()
    t = model.temperature.clone()
    model.temperature.fill_(1.0)
    try:
        device = next(model.parameters()).device
        return torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    finally:
        model.temperature.copy_(t)


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The softmax temperature minimising the negative log-likelihood of (logits, y)."""
    logits = logits.detach().clone()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def ece_of(logits: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> float:
    probs = torch.softmax(logits.double() / temperature, dim=1).numpy()
    return expected_calibration_error(probs, y.numpy())


def calibrate(model: DigitNet, x: torch.Tensor, y: torch.Tensor, with_canvas: bool) -> dict:
    """Fit ``model``'s temperature on (x, y), the validation split (``with_canvas``: and its
    canvas-style copies), set it, and return what the card records of it."""
    logits = logits_of(model, x)
    temperature = fit_temperature(logits, y)
    model.temperature.fill_(temperature)
    return {
        "method": "temperature scaling (NLL, LBFGS) on the validation split"
        + (" and its canvas-style copies" if with_canvas else ""),
        "temperature": round(temperature, 6),
        "val_ece_before": round(ece_of(logits, y), 6),
        "val_ece_after": round(ece_of(logits, y, temperature), 6),
    }
