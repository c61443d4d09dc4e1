"""Training jobs: the PyTorch trainer and the scikit-learn trainer. Loops here never import mlflow."""
