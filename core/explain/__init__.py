"""What a network looks at: class activation maps, the tau crop, fidelity, 3D maps, case reports."""
