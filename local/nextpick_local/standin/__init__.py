"""The AWS stand-in: template.yaml's resources in moto (CloudFormation through the SAM translator), and
what nothing Docker-free provides: API Gateway in front of the functions, the functions themselves
(in-process, or a child process for image functions) and their event sources (bus rules, the table
stream, the schedule)."""
