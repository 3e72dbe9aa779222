"""Statistics for honest comparisons: intervals, paired tests and the course's one noise rule.

A measured accuracy is one draw from the test sets the model could have met; another test set, another seed,
and it moves. This package says how far (an interval) and whether a difference between two models is larger
than that movement (a verdict). Chapter 1 introduces it; every later chapter states its comparisons with it.

What to use when
----------------
- One accuracy (``k`` right of ``n`` independent images): :func:`wilson`.
- One AUC / TAR@FAR / EER on verification pairs: :func:`auc_interval`, :func:`tar_at_far_interval`,
  :func:`eer_interval`, with ``groups`` = the person of each pair; any other metric: :func:`bootstrap`.
- Two classifiers on the same images: :func:`compare_correct` (McNemar's exact test, :func:`mcnemar`, and a
  paired bootstrap of the accuracy difference).
- Two verification models on the same pairs: :func:`compare_scores` (:func:`paired_bootstrap` of the AUC,
  TAR@FAR, EER or accuracy difference, resampling people); :func:`delong` for an AUC difference by formula.
- Two training recipes over seeds: :func:`compare_seeds` (:func:`paired_seeds`, a paired t interval).
- Anything else with an interval of a paired difference in hand: :func:`verdict`.
- A chapter's verdicts as a table: ``pd.DataFrame([v.row for v in verdicts])``; in prose: ``fk.notebook.say(v.text)``.

The noise rule
--------------
One rule for the whole course. **A winner is named only when the 95% interval of the paired difference A - B
excludes zero (and the paired test, when there is one, gives p < ALPHA = 0.05), and the comparison has at least
the minimum size**: ``MIN_ITEMS`` = 100 test items (images or pairs), ``MIN_GROUPS`` = 20 people when people are
resampled, ``MIN_SEEDS`` = 3 seeds per model for comparisons over seeds. Otherwise the verdict is "no detectable
difference at this size" -- not "no difference": a larger test set or more seeds might still find one.

Why each part:

- **Paired.** Both models are scored on the same items (and trained with the same seeds). Most of the spread
  between items is how hard each one is, shared by both models; the paired difference cancels it. Comparing
  two separate intervals, or one accuracy's standard error, ignores that and misjudges the noise.
- **Intervals, not just p-values.** The interval shows the size of the difference and how well it is known:
  "+0.004 [-0.010, +0.018]" says both "undecided" and "at most about two points either way".
- **People, not pairs.** Verification pairs of one person share that person's images and succeed or fail
  together; resampling pairs as if independent makes intervals too narrow. Resample people (``groups``).
- **Several seeds.** Training from a different random start moves a small model's accuracy by about as much
  as many of the effects the course measures; one seed per model cannot separate the recipe from the luck of
  the draw. Three seeds is the least that estimates the seed-to-seed spread at all.
- **Minimum sizes.** Below them an interval is itself too unreliable to trust (a bootstrap over 8 people, a
  t interval over 2 seeds), so no winner is named however the numbers fall.

The level is 95% throughout; with many comparisons in one chapter, about 1 in 20 true ties will still show a
"winner" by chance, so a surprising verdict deserves a rerun with another seed before it is believed.

>>> import facekit.stats as st
>>> print(st.wilson(87, 100))
0.870 [0.790, 0.922]
"""

from facekit.stats.bootstrap import MAX_FAILED_FRACTION, bootstrap, paired_bootstrap, resample_indices
from facekit.stats.interval import Interval, standard_error, wilson, z_value
from facekit.stats.paired import Test, delong, mcnemar, paired_seeds, paired_t
from facekit.stats.verdict import (ALPHA, MIN_GROUPS, MIN_ITEMS, MIN_SEEDS, Verdict, compare_correct, compare_scores,
                                   compare_seeds, verdict)
from facekit.stats.verification import (ScoreMetric, auc_interval, eer_interval, roc_bootstrap, score_metric,
                                        tar_at_far_interval)

__all__ = ["ALPHA", "MIN_SEEDS", "MIN_ITEMS", "MIN_GROUPS", "MAX_FAILED_FRACTION", "Interval", "wilson",
           "standard_error", "z_value", "bootstrap", "paired_bootstrap", "resample_indices", "auc_interval",
           "tar_at_far_interval", "eer_interval", "roc_bootstrap", "ScoreMetric", "score_metric", "Test", "mcnemar",
           "paired_t", "paired_seeds", "delong", "Verdict", "verdict", "compare_correct", "compare_scores",
           "compare_seeds"]
