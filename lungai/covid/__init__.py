"""COVIDHierarchical backend: CHS-Net (seed 003), cascaded RAIU-Nets for lungs then COVID-19 infection."""
