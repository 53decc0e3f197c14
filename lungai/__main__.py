from lungai.cli import run

run()
