"""Run the whole nextpick system on one machine: moto as the AWS stand-in, the real handlers behind a
local API Gateway, the real retrain job, a generated demo shop."""
