// Classifies the lines of stdin with a trained ltk run, through the public API (ltk/ltk.h): one
// JSON answer per line on stdout, as ltk-predict prints them.
//   classify RUN_DIR < texts.txt
#include <iostream>
#include <string>

#include <ltk/ltk.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: classify RUN_DIR < texts.txt\n";
    return 2;
  }
  try {
    std::cerr << ltk::version_line() << "\n";
    ltk::Classifier classifier(argv[1]);
    for (std::string line; std::getline(std::cin, line);)
      if (!line.empty()) std::cout << classifier.classify(line).json.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "classify: " << e.what() << "\n";
    return 1;
  }
}
