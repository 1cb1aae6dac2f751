# The tiny FCN of seg_ade20k.py on (generated) COCO-Stuff-10K.
_base_ = ['./seg_ade20k.py']
num_classes = 171
data_root = 'data/coco_stuff10k'
model = dict(decode_head=dict(num_classes=num_classes))
train_dataloader = dict(
    dataset=dict(
        type='COCOStuffDataset',
        data_root=data_root,
        reduce_zero_label=True,
        data_prefix=dict(
            img_path='images/train2014', seg_map_path='annotations/train2014')))
val_dataloader = dict(
    dataset=dict(
        type='COCOStuffDataset',
        data_root=data_root,
        reduce_zero_label=True,
        data_prefix=dict(
            img_path='images/test2014', seg_map_path='annotations/test2014')))
test_dataloader = val_dataloader
