# SHViT classifier (S1 here; the variant configs change arch/in_channels):
# the backbone's last stage, global average pooling and the official
# BatchNorm1d + Linear head (SHViTClsHead pools a map itself). Label
# smoothing 0.1 (soft Mixup/CutMix targets are handled by LabelSmoothLoss).
model = dict(
    type='ImageClassifier',
    backbone=dict(type='SHViT', arch='s1', out_indices=(2, )),
    neck=None,
    head=dict(
        type='SHViTClsHead',
        num_classes=1000,
        in_channels=320,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        topk=(1, 5),
        # accuracy against mixed soft labels is meaningless
        cal_acc=False))
