import numpy as np
import pytest
import torch

from jointspace.objectives.cca import DeepCCAObjective, LinearCCA, dcca_loss


def planted(n=500, seed=0):
    """Two 6-/5-D views sharing a 2-D latent signal with different strengths, plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    x = z @ rng.normal(size=(2, 6)) + rng.normal(size=(n, 6)) * np.array([0.3, 1, 1, 2, 1, 1])
    y = z @ rng.normal(size=(2, 5)) * np.array([1, 0.5]).repeat([1, 4]) + rng.normal(size=(n, 5))
    return x, y, z


def test_linear_cca_matches_sklearn():
    from sklearn.cross_decomposition import CCA

    x, y, _ = planted()
    ours = LinearCCA(n_components=3, reg=1e-10).fit(x, y)
    reference = CCA(n_components=3, scale=False, max_iter=5000, tol=1e-12).fit(x, y)
    xs, ys = reference.transform(x, y)
    theirs = [abs(np.corrcoef(xs[:, i], ys[:, i])[0, 1]) for i in range(3)]
    np.testing.assert_allclose(ours.correlations_, theirs, atol=1e-3)


def test_linear_cca_recovers_the_planted_signal_and_whitens():
    x, y, z = planted(n=2000, seed=1)
    cca = LinearCCA(n_components=4, reg=1e-8).fit(x, y)
    assert cca.correlations_[1] > 0.5 > cca.correlations_[2] + 0.3  # two shared directions only
    zx, zy = cca.transform(x, y)
    np.testing.assert_allclose(np.cov(zx.T), np.eye(4), atol=1e-6)  # unit variance, uncorrelated
    np.testing.assert_allclose(
        np.diag(np.corrcoef(zx.T, zy.T)[:4, 4:]), cca.correlations_, atol=1e-6
    )
    # The first two canonical variates span the latent: a linear fit explains most of z.
    coef, *_ = np.linalg.lstsq(zx[:, :2], z - z.mean(0), rcond=None)
    residual = (z - z.mean(0)) - zx[:, :2] @ coef
    assert residual.var() / z.var() < 0.2  # the rest is the views' own noise
    assert cca is cca.fit(x, y)  # fit returns self


def test_linear_cca_errors_are_clear():
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearCCA().transform(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="more rows than components: 2 rows, 2 components"):
        LinearCCA(n_components=2).fit(np.ones((2, 2)), np.ones((2, 2)))


def test_dcca_equals_the_analytic_correlation_on_a_linear_toy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 1))
    y = 0.6 * x + 0.8 * rng.normal(size=(400, 1))
    loss = dcca_loss(torch.tensor(x), torch.tensor(y), reg=1e-12)
    assert -loss.item() == pytest.approx(abs(np.corrcoef(x[:, 0], y[:, 0])[0, 1]), abs=1e-5)
    a, b, _ = planted(n=300, seed=3)
    total = -dcca_loss(torch.tensor(a), torch.tensor(b), top_k=3, reg=1e-12).item()
    expected = LinearCCA(n_components=3, reg=1e-12).fit(a, b).correlations_.sum()
    assert total == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("batch", [2, 8, 16])
def test_dcca_never_nan_when_batch_is_at_most_the_dimension(batch):
    torch.manual_seed(batch)
    a = torch.randn(batch, 16, requires_grad=True)
    b = torch.randn(batch, 16, requires_grad=True)
    loss = DeepCCAObjective(top_k=8)({"text": a, "image": b})["dcca_loss"]
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert -loss.item() <= min(8, batch - 1) + 1e-6  # at most rank N − 1 correlations of ≤ 1
    constant = torch.ones(batch, 16, requires_grad=True)  # zero variance: still finite
    dcca_loss(constant, b.detach()).backward()
    assert torch.isfinite(constant.grad).all()
