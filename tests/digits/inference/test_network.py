"""DigitNet: shapes, softmax, size on disk, temperature, fused inference copy."""

from __future__ import annotations

from pathlib import Path

import torch

from digits.inference.network import DigitNet, fuse_for_inference


def make_model() -> DigitNet:
    torch.manual_seed(0)
    model = DigitNet()
    # non-trivial BatchNorm statistics, so that folding them is actually exercised
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_output_shape_and_probabilities() -> None:
    x = torch.rand(5, 1, 28, 28)
    with torch.inference_mode():
        logits = make_model()(x)
    assert logits.shape == (5, 10)
    probs = torch.softmax(logits, dim=1)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))


def test_weights_file_at_most_2mb(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(make_model().state_dict(), path)
    assert path.stat().st_size <= 2 * 1024 * 1024


def test_temperature_buffer_softens_softmax() -> None:
    model = make_model()
    assert "temperature" in model.state_dict() and float(model.temperature) == 1.0
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        sharp = torch.softmax(model(x), 1)
        model.temperature.fill_(4.0)
        soft = torch.softmax(model(x), 1)
    assert torch.all(soft.max(1).values < sharp.max(1).values)
    torch.testing.assert_close(soft.argmax(1), sharp.argmax(1))


def test_fused_copy_matches_eval_model() -> None:
    model = make_model()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(4, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fused(x[:1]), model(x[:1]), atol=1e-4, rtol=1e-4)


def test_fused_copy_gives_input_gradients_without_weight_gradients() -> None:
    """Heat maps differentiate the input only; the eval-only copy computes no weight gradients."""
    model = make_model()
    fused = fuse_for_inference(model)
    assert not any(p.requires_grad for p in fused.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the trained model is left as it was
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    fused(x)[:, 3].sum().backward()
    y = x.detach().clone().requires_grad_(True)
    model.eval()(y)[:, 3].sum().backward()
    assert x.grad is not None and y.grad is not None
    torch.testing.assert_close(x.grad, y.grad, atol=1e-4, rtol=1e-3)
    assert all(p.grad is None for p in fused.parameters())


def test_widths_are_configurable_and_fuse() -> None:
    torch.manual_seed(0)
    model = DigitNet(channels=(16, 24, 32, 48)).eval()
    assert model.channels == (16, 24, 32, 48) and model.classifier.in_features == 48
    x = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(fuse_for_inference(model)(x), model(x), atol=1e-4, rtol=1e-4)
