# cmake -DIN=docs/openapi.json -DOUT=openapi_doc.c -P openapi_embed.cmake: the document as a C
# byte array (openapi.c serves it), so the binary needs no file at run time.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
file(WRITE ${OUT} "#include <stddef.h>\nconst unsigned char openapi_doc[] = {${bytes}0};\n"
                  "const size_t openapi_doc_len = ${n};\n")
