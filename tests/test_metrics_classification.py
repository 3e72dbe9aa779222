import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, recall_score

from facekit.metrics import classification_result


def test_against_sklearn():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 6, generator=g)
    labels = torch.randint(0, 6, (200,), generator=g)
    r = classification_result(logits, labels)
    preds = logits.argmax(1).numpy()
    assert r.accuracy == pytest.approx(accuracy_score(labels.numpy(), preds))
    np.testing.assert_allclose(r.per_class_accuracy, recall_score(labels.numpy(), preds, average=None))
    assert r.confusion.sum() == 200 and r.n == 200
    assert np.trace(r.confusion) == round(r.accuracy * 200)


def test_absent_class_is_nan_and_shape_mismatch_errors():
    r = classification_result(torch.tensor([0, 0]), torch.tensor([0, 0]), num_classes=3)
    assert r.per_class_accuracy[0] == 1 and np.isnan(r.per_class_accuracy[1])
    with pytest.raises(ValueError, match="differ in shape"):
        classification_result(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
