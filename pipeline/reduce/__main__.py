from pipeline.reduce.entry import main

main()
