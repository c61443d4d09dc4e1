"""Training jobs: the PyTorch trainer and the scikit-learn trainer.

Nothing here imports MLflow: the jobs talk to the run interface of tracking/interface.py, and what needs
MLflow itself lives in tracking/ and registry/ (tests/test_architecture.py checks).
"""
