"""GPU nodes made usable and visible: the NVIDIA device plugin, the DCGM exporter and the GPU dashboard."""
