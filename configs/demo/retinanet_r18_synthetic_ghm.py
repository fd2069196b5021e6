# GHM-C + GHM-R with mu chosen for this demo's box deltas (docs/demo.md, "GHM-R: choosing mu"): the
# paper's bins, momenta and loss weights, GHM-R mu 0.1 instead of 0.02. The running
# histograms are buffers, so they are saved in and resumed from checkpoints.
_base_ = './retinanet_r18_synthetic_ghm_paper.py'
model = dict(bbox_head=dict(loss_bbox=dict(mu=0.1)))
