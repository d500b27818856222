from pipeline.sweep.entry import main

main()
