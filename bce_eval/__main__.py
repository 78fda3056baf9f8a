from .cli import console_main

# Guarded: Dask's LocalCluster starts its workers by spawning, which imports this module again.
if __name__ == "__main__":
    console_main()
