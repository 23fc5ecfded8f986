"""spark-submit entry points, one per stage; each has ``main(argv)``."""
