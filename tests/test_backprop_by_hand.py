"""A 2-2-1 sigmoid network with mse loss, worked by hand from the notes' formulas.

Notation of the notes: layer 1 is the input, a^(1) = x; z^(l+1) = W^(l) a^(l) + b^(l);
a^(l+1) = f(z^(l+1)), f the logistic function with f'(z) = a (1 - a).

    output delta:   delta^(3) = (a^(3) - y) * f'(z^(3))
    hidden delta:   delta^(2) = (W^(2)T delta^(3)) * f'(z^(2))
    dE/dW^(l) = delta^(l+1) a^(l)T,   dE/db^(l) = delta^(l+1)        per example
    J = 1/m sum_i 1/2 ||a^(3)_i - y_i||^2 + lambda/2 sum W^2
    dJ/dW^(l) = 1/m sum_i dE_i/dW^(l) + lambda W^(l),   dJ/db^(l) = 1/m sum_i dE_i/db^(l)

Everything below the Network call is plain NumPy, one small step at a time.
"""

import numpy as np
import pytest

from netcli.nn import LAYERS, LOSSES, Network
from netcli.nn.regularizers import make_penalties

W1 = np.array([[0.15, 0.20],
               [0.25, 0.30]])   # W^(1): (hidden 2, input 2)
b1 = np.array([0.35, 0.35])
W2 = np.array([[0.40, 0.45]])   # W^(2): (output 1, hidden 2)
b2 = np.array([0.60])
X = np.array([[0.05, 0.10],
              [1.00, -0.50],
              [-0.30, 0.80]])   # m = 3 examples
Y = np.array([[0.01],
              [0.99],
              [0.50]])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def by_hand(lam):
    m = len(X)
    J = 0.0
    dW1, db1 = np.zeros_like(W1), np.zeros_like(b1)
    dW2, db2 = np.zeros_like(W2), np.zeros_like(b2)
    for x, y in zip(X, Y):
        a1 = x                                   # input layer
        z2 = W1 @ a1 + b1
        a2 = sigmoid(z2)
        z3 = W2 @ a2 + b2
        a3 = sigmoid(z3)
        J += 0.5 * np.sum((a3 - y) ** 2)
        delta3 = (a3 - y) * a3 * (1 - a3)        # output delta
        delta2 = (W2.T @ delta3) * a2 * (1 - a2)  # hidden delta
        dW2 += np.outer(delta3, a2)
        db2 += delta3
        dW1 += np.outer(delta2, a1)
        db1 += delta2
    J = J / m + lam / 2 * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    return J, {"layers.0.W": dW1 / m + lam * W1, "layers.0.b": db1 / m,
               "layers.1.W": dW2 / m + lam * W2, "layers.1.b": db2 / m}


def by_network(lam):
    weight_penalties, _ = make_penalties({"l2": lam})
    net = Network([LAYERS.get("dense")(2, "sigmoid"), LAYERS.get("dense")(1, "sigmoid")], (2,),
                  LOSSES.get("mse")(), weight_penalties, dtype=np.float64)
    net.params["layers.0.W"][...] = W1
    net.params["layers.0.b"][...] = b1
    net.params["layers.1.W"][...] = W2
    net.params["layers.1.b"][...] = b2
    J, _ = net.loss_and_grad(net.theta, X, Y)
    return J, {name: g.copy() for name, g in net.grads.items()}


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_loss_and_grad_match_the_notes_by_hand(lam):
    J_hand, g_hand = by_hand(lam)
    J_net, g_net = by_network(lam)
    assert J_net == pytest.approx(J_hand, rel=1e-12)
    assert set(g_net) == set(g_hand)
    for name in g_hand:
        assert g_net[name].shape == g_hand[name].shape, name
        np.testing.assert_allclose(g_net[name], g_hand[name], rtol=1e-12, atol=1e-15, err_msg=name)


def test_first_example_number_by_number():
    """The first example alone (m = 1, no penalty), with the intermediate numbers written out."""
    x, y = X[0], Y[0]
    z2 = W1 @ x + b1                              # [0.3775, 0.3925]
    np.testing.assert_allclose(z2, [0.3775, 0.3925])
    a2 = sigmoid(z2)
    z3 = W2 @ a2 + b2
    a3 = sigmoid(z3)
    delta3 = (a3 - y) * a3 * (1 - a3)
    delta2 = (W2.T @ delta3) * a2 * (1 - a2)
    net = Network([LAYERS.get("dense")(2, "sigmoid"), LAYERS.get("dense")(1, "sigmoid")], (2,),
                  LOSSES.get("mse")(), dtype=np.float64)
    for name, value in (("layers.0.W", W1), ("layers.0.b", b1), ("layers.1.W", W2), ("layers.1.b", b2)):
        net.params[name][...] = value
    J, _ = net.loss_and_grad(net.theta, X[:1], Y[:1])
    assert J == pytest.approx(0.5 * float(((a3 - y) ** 2).sum()), rel=1e-12)
    np.testing.assert_allclose(net.grads["layers.1.W"], [[delta3[0] * a2[0], delta3[0] * a2[1]]], rtol=1e-12)
    np.testing.assert_allclose(net.grads["layers.1.b"], delta3, rtol=1e-12)
    np.testing.assert_allclose(net.grads["layers.0.W"],
                               [[delta2[0] * x[0], delta2[0] * x[1]],
                                [delta2[1] * x[0], delta2[1] * x[1]]], rtol=1e-12)
    np.testing.assert_allclose(net.grads["layers.0.b"], delta2, rtol=1e-12)
