"""facekit.viz: the one home of figure helpers (grids, detections, learning curves, notebook defaults)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from facekit import viz  # noqa: E402
from facekit.train import History, PlotHistory, plot_history  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_image_grid_lays_out_rows_and_titles():
    images = torch.rand(5, 1, 6, 4)
    ax = viz.image_grid(images, nrow=3, titles=list("abcde"), title="t")
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (2 * (6 + 2) + 2, 3 * (4 + 2) + 2, 3)  # 2 rows x 3 columns, 2-pixel padding
    assert [t.get_text() for t in ax.texts] == list("abcde") and ax.get_title() == "t"
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        viz.image_grid(torch.rand(3, 8, 8))


def test_draw_detections_paints_the_box_edge_and_keeps_the_rest():
    image = torch.zeros(3, 20, 20)
    out = viz.draw_detections(image, [[2, 2, 12, 12]], colors="lime", width=1)
    assert out[:, 2, 5].tolist() == [0.0, 1.0, 0.0]  # the top edge, lime
    assert out[:, 16, 16].tolist() == [0.0, 0.0, 0.0] and out.shape == (3, 20, 20)
    none = viz.draw_detections(image, torch.zeros(0, 4))
    assert torch.equal(none, image)


def test_plot_history_draws_train_and_val_from_the_records():
    hist = History([{"epoch": 1, "train_loss": 2.0, "val_loss": 2.5, "train_accuracy": 0.3},
                    {"epoch": 2, "train_loss": 1.0, "val_loss": 1.5, "train_accuracy": 0.6}])
    fig = plot_history(hist, ("loss", "accuracy"), title="run")
    loss_ax, acc_ax = fig.axes
    assert [list(line.get_ydata()) for line in loss_ax.lines] == [[2.0, 1.0], [2.5, 1.5]]
    assert [line.get_label() for line in acc_ax.lines] == ["train"]  # no val_accuracy recorded
    assert viz.plot_history is plot_history


def test_plot_history_callback_draws_at_the_end_of_fit():
    from torch.utils.data import TensorDataset

    from facekit.train import fit

    cb = PlotHistory(("loss",))
    fit(torch.nn.Linear(2, 2), TensorDataset(torch.randn(8, 2), torch.zeros(8).long()), epochs=2, batch_size=4,
        progress=False, callbacks=[cb])
    assert cb.figure is not None and len(cb.figure.axes[0].lines[0].get_xdata()) == 2


def test_setup_notebook_sets_small_figures():
    with plt.rc_context():  # the theme is global: restore it for the other tests
        viz.setup_notebook(dpi=50)
        assert plt.rcParams["figure.dpi"] == 50 and plt.rcParams["image.cmap"] == "gray"
