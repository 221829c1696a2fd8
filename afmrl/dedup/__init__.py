"""De-duplication: groups of listings that are the same product.

Candidate pairs come from index neighbours (Milvus, :mod:`afmrl.dedup.neighbours`) and any pairs asked
about; each pair gets features (:mod:`afmrl.dedup.features`: embedding cosines, title TF-IDF, model-number,
brand, attribute and price agreement, neighbour ranks); a classifier fit on labelled pairs scores them and
a threshold calibrated on out-of-fold scores (:mod:`afmrl.dedup.calibrate`: a target precision, or the best
F1) decides; :mod:`afmrl.dedup.groups` turns the decisions into groups (average linkage, no chaining) and a
review queue of pairs just below the threshold. :func:`afmrl.dedup.job.deduplicate` runs it all.
"""
