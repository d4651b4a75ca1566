"""`pi-cluster flash`: write an image to SD cards/SSDs (or image files) with per-node first-boot config.

Modules: ``source`` (decompress once, as a stream), ``target`` (device discovery and safety), ``writer``
(fan-out, first MiB last, verify), ``bootfs`` (FAT editing via mtools), ``firstboot`` (cloud-init,
firstrun.sh, legacy), ``core`` (plan + flash + customize_image).
"""
