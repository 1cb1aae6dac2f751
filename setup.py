"""Installs the ``flexvit-mm`` distribution (import name ``flexvit_mm``).

The pinned versions live in ``requirements/constraints.txt``; the
requirements here are left unpinned so that pip resolves them against that
one constraints file (see the Makefile and ``tools/setup_env.sh``).
"""
import os.path as osp

from setuptools import find_packages, setup


def read_requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def read_version():
    namespace = {}
    with open(osp.join('flexvit_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='flexvit-mm',
    version=read_version(),
    description='Flexible vision backbones (stitched ViTs, SHViT) for '
    'MMSegmentation, MMDetection and MMPretrain',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['flexvit_mm', 'flexvit_mm.*']),
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        # tools/deploy/export_stitch.py --onnx
        'deploy': ['onnx', 'onnxruntime', 'onnxscript'],
    },
    license='Apache-2.0',
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False,
)
